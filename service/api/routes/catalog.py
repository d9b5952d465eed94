"""/v1/catalog: models and datasets this server can analyse."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api import catalog
from service.api.deps import OwnerDep, SettingsDep
from service.api.schemas import CatalogDatasets, CatalogModels
from service.api.sessions import ShortSessionRoute

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], route_class=ShortSessionRoute)


@router.get("/models", response_model=CatalogModels, summary="Models: bundled, local checkpoints, timm")
def models(
    settings: SettingsDep,
    _owner: OwnerDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Name or glob, e.g. `resnet*` or `lite0`.",
            examples=["efficientnet_lite"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many timm names.")] = 50,
) -> CatalogModels:
    """Each entry says what to pass as `model.weights` and whether those weights can be loaded here
    now (bundled package installed, checkpoint present, hub weights already cached)."""
    items, truncated = catalog.list_models(settings, q, limit)
    return CatalogModels(items=items, truncated=truncated)


@router.get("/datasets", response_model=CatalogDatasets, summary="Datasets and dataset schemes")
def datasets(settings: SettingsDep, _owner: OwnerDep) -> CatalogDatasets:
    return CatalogDatasets(items=catalog.list_datasets(settings))
