"""/v1/datasets: upload a file of embeddings, list, read and delete your uploads (issue 19). A job names
one as `{"dataset": {"spec": "upload:<id>"}}`. The work is :mod:`service.core.uploads`."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response, status

from service.api.deps import OwnerDep, SessionDep, SettingsDep
from service.api.multipart import MULTIPART, receive_file
from service.api.routes.jobs import PROBLEM
from service.api.schemas import DatasetList, DatasetOut
from service.api.sessions import ShortSessionRoute
from service.core import uploads
from service.core.db import get_sessionmaker
from service.core.store import ShardStore

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=ShortSessionRoute)

UploadId = Annotated[str, Path(max_length=64, description="The upload's id (its sha256).")]

UPLOAD_BODY = {
    "required": True,
    "content": {MULTIPART: {"schema": {
        "type": "object", "required": [uploads.FILE_FIELD],
        "properties": {uploads.FILE_FIELD: {
            "type": "string", "format": "binary",
            "description": "A .npz (x_train, y_train, x_test, y_test), .parquet (embedding, label and split "
            "columns) or .safetensors file; its extension names the format.",
        }},
    }}},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    summary="Upload a file of embeddings",
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        200: {"model": DatasetOut, "description": "This key had uploaded the same file before: that upload"},
        413: {**PROBLEM, "description": "The file is larger than ADVISOR_MAX_UPLOAD_BYTES"},
        415: {**PROBLEM, "description": "The body is not multipart/form-data"},
        422: {**PROBLEM, "description": "No `file` part, a malformed body, or a file that is not the format its "
              "extension names (names `file`)"},
        429: {**PROBLEM, "description": "Over the key's upload quota (ADVISOR_UPLOAD_QUOTA_FILES / _BYTES), or "
              "over the request rate"},
    },
)
async def upload_dataset(request: Request, response: Response, settings: SettingsDep,
                         owner: OwnerDep) -> DatasetOut:
    """Streams the multipart form field `file` into the artifact store (never whole into memory): past
    `ADVISOR_MAX_UPLOAD_BYTES`, or past the key's byte quota, it stops at once and nothing is kept.
    Answers 201 with the upload (`id` is the file's sha256) and a Location header; the same file again
    answers 200 with the same upload. Then submit a job with `{"dataset": {"spec": "upload:<id>"}}`."""
    store = ShardStore(settings.shard_store_url)
    make_session = get_sessionmaker(settings.db_url)

    def begin(filename: str | None) -> uploads.Incoming:
        with make_session() as session:
            return uploads.begin(session, settings, store, owner, filename)

    async def open_sink(filename: str | None) -> uploads.Incoming:
        return await anyio.to_thread.run_sync(begin, filename)

    incoming = await receive_file(request, uploads.FILE_FIELD, open_sink)

    def finish() -> tuple[DatasetOut, bool]:
        with make_session() as session:
            row, created = uploads.finish(session, settings, incoming)
            return DatasetOut.of(row), created

    out, created = await anyio.to_thread.run_sync(finish)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/datasets/{out.id}"
    return out


@router.get(
    "",
    response_model=DatasetList,
    summary="List your uploads (newest first)",
    responses={400: {**PROBLEM, "description": "Bad page_token"}},
)
def list_uploaded_datasets(
    session: SessionDep,
    owner: OwnerDep,
    page_size: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 20,
    page_token: Annotated[
        str | None, Query(max_length=512, description="`next_page_token` of the previous page.")
    ] = None,
) -> DatasetList:
    rows, token = uploads.list_uploads(session, owner, page_size=page_size, page_token=page_token)
    return DatasetList(items=[DatasetOut.of(r) for r in rows], next_page_token=token)


@router.get(
    "/{upload_id}",
    response_model=DatasetOut,
    summary="One upload",
    responses={404: {**PROBLEM, "description": "No such upload (or another key's)"}},
)
def get_uploaded_dataset(upload_id: UploadId, session: SessionDep, owner: OwnerDep) -> DatasetOut:
    return DatasetOut.of(uploads.get_upload(session, owner, upload_id))


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an upload and its file",
    responses={
        404: {**PROBLEM, "description": "No such upload (or another key's)"},
        409: {**PROBLEM, "description": "A queued or running job reads it (`jobs` lists them)"},
    },
)
def delete_uploaded_dataset(upload_id: UploadId, session: SessionDep, settings: SettingsDep,
                            owner: OwnerDep) -> Response:
    uploads.delete_upload(session, ShardStore(settings.shard_store_url), owner, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
