"""S3 faults against a real S3-protocol server: moto_server behind a small fault-injecting proxy.

The proxy forwards every request to moto_server unchanged, except that it can answer 503 SlowDown (every Nth request,
or the next N requests) and 403 InvalidAccessKeyId for one access key, with S3's own XML error bodies. Transient
faults must be absorbed by retries (botocore's, s3fs's, then our Prefect task retries) and leave a complete,
consistent lake; permanent ones (a missing bucket, bad credentials) must fail fast with a clear message.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition
from tests.integration.test_s3 import s3_endpoint  # noqa: F401 - the moto_server fixture

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
BAD_KEY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access '
           b"Key Id you provided does not exist in our records.</Message></Error>")


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fail_every = 0
        self.fail_next = 0
        self.fail_path = ""  # fail_next counts only requests whose path contains this
        self.deny_key = ""
        self.requests = 0
        self.injected = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and "Expect: 100-continue" answered (botocore's PUTs)

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = proxy.decide(self.headers.get("Authorization", ""), self.path)
                if status:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":  # a HEAD answer has no body, or keep-alive desynchronises
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                head = self.command == "HEAD"  # a HEAD's Content-Length is the object's size: pass it on
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection") and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def decide(self, authorization: str, path: str) -> tuple[int, bytes]:
        with self.lock:
            self.requests += 1
            if self.deny_key and f"Credential={self.deny_key}/" in authorization:
                return 403, BAD_KEY
            burst = self.fail_next > 0 and self.fail_path in path
            if burst or (self.fail_every and self.requests % self.fail_every == 0):
                self.fail_next -= burst
                self.injected += 1
                return 503, SLOW_DOWN
        return 0, b""


@pytest.fixture
def proxy(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:  # noqa: F811
    import s3fs

    fault = FaultProxy(s3_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", fault.url)
    s3fs.S3FileSystem.clear_instance_cache()  # cached clients keep the endpoint they were made with
    try:
        yield fault
    finally:
        fault.server.shutdown()
        s3fs.S3FileSystem.clear_instance_cache()


def _s3fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def test_the_pipeline_completes_through_injected_5xx_responses(proxy: FaultProxy, sample_config: dict,
                                                               sample_csv: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.nightly import nightly_flow

    fs = _s3fs()
    fs.mkdir("fault-lake")
    fs.put_file(str(sample_csv), "fault-lake/input/tweets.csv")
    proxy.fail_every = 7  # one request in seven answers 503 SlowDown, in every stage
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(sample_config | {"data_root": "s3://fault-lake/nightly", "run_date": "2026-11-21"}
                                     | {"ingest": sample_config["ingest"] | {"sources": ["s3://fault-lake/input/*.csv"]}}))
    started = proxy.requests
    result = nightly_flow(config=str(config))
    proxy.fail_every = 0
    assert proxy.injected >= 20 and proxy.requests - started > 100, (proxy.injected, proxy.requests)
    lake = Lake("s3://fault-lake/nightly")
    curated = lake.read_manifest("curated", "2026-11-21")["counts"]
    predictions = read_partition(lake, "predictions", "2026-11-21")
    assert curated["raw_rows"] == curated["curated_rows"] + curated["rejected_rows"] == 303
    assert predictions.height == curated["curated_rows"] == predictions["doc_id"].n_unique()
    assert result["score"]["rows"] == curated["curated_rows"]

    # A burst longer than one request's own retries, on the score stage's requests (inside its tasks): the Prefect
    # task retry (transient I/O only) recovers. The first such request is the HEAD of the predictions manifest: its
    # 503 has no body for s3fs to retry on, so botocore's 5 attempts are all one task attempt gets. (With the manifest
    # beside the shards, s3fs answered that HEAD from the listing cached when the shards were committed, and the
    # burst fell on GETs and PUTs that s3fs retries 5 times more: 40 was then the size that outlasted them.)
    proxy.fail_next, proxy.fail_path = 12, "predictions"
    again = nightly_flow(config=str(config), overrides={"score.force": True})
    assert again["score"]["scored_this_run"] == curated["curated_rows"]
    with get_client(sync_client=True) as client:
        retried = [r for r in client.read_task_runs() if r.run_count > 1]
    assert retried, "the burst should have needed a task-level retry"


def test_a_missing_bucket_fails_fast_without_retries(proxy: FaultProxy, sample_config: dict) -> None:
    from bert_pipeline.config import build_config
    from bert_pipeline.errors import is_transient
    from bert_pipeline.stages.ingest import run_ingest

    cfg = build_config(sample_config, {"data_root": "s3://no-such-bucket/lake"})
    started, requests = time.monotonic(), proxy.requests
    with pytest.raises(Exception) as failure:
        run_ingest(cfg)
    assert not is_transient(failure.value)  # so the task does not retry it
    assert "no-such-bucket" in str(failure.value)
    assert proxy.requests - requests < 10 and time.monotonic() - started < 30


def test_bad_credentials_fail_fast_with_a_clear_message(proxy: FaultProxy, sample_config: dict,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from bert_pipeline.config import build_config
    from bert_pipeline.errors import is_transient
    from bert_pipeline.stages.ingest import run_ingest

    _s3fs().mkdir("creds-lake")
    proxy.deny_key = "AKIAREVOKED"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREVOKED")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a new process would read the revoked key: so must this one
    cfg = build_config(sample_config, {"data_root": "s3://creds-lake/lake"})
    started, requests = time.monotonic(), proxy.requests
    with pytest.raises(PermissionError) as failure:
        run_ingest(cfg)
    s3fs.S3FileSystem.clear_instance_cache()
    assert not is_transient(failure.value) and "creds-lake/lake" in str(failure.value)
    assert proxy.requests - requests < 10 and time.monotonic() - started < 30
