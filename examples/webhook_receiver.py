"""A webhook receiver for the Redundancy Advisor: verify the signature, then act on the event.

    pip install './client[webhooks]'   # advisor_client with its webhook helper (`standardwebhooks`)
    export ADVISOR_WEBHOOK_SECRET=$(curl -s -H "X-API-Key: $KEY" $ADVISOR_URL/v1/webhooks/secret | jq -r .secret)
    python examples/webhook_receiver.py --port 8080   # then submit jobs with "callback_url": "http://host:8080/"

Each verified event is printed as one JSON line on stdout; a forged or stale one gets 400.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from advisor_client import WebhookVerificationError, verify_webhook

SECRET = os.environ.get("ADVISOR_WEBHOOK_SECRET", "")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = verify_webhook(body, self.headers, SECRET)
        except WebhookVerificationError as exc:
            self.send_response(400)
            self.end_headers()
            print(json.dumps({"rejected": str(exc)}), flush=True)
            return
        self.send_response(204)  # acknowledge fast; do the real work elsewhere
        self.end_headers()
        data = event["data"]
        print(json.dumps({"id": self.headers["webhook-id"], "type": event["type"], "job_id": data["job_id"],
                          "recommendations": data["recommendations"]}), flush=True)

    def log_message(self, *args: object) -> None:  # keep stdout for the events
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    HTTPServer((args.host, args.port), Receiver).serve_forever()
