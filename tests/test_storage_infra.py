"""infra/storage/create_bucket.py run as users run it, against the moto S3 server."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "infra" / "storage" / "create_bucket.py"
_spec = importlib.util.spec_from_file_location("create_bucket", SCRIPT)  # a script, not a package: its plan
create_bucket = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(create_bucket)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(120)
def test_create_bucket_against_moto(s3_server):
    import boto3
    from botocore.exceptions import ClientError

    bucket = f"avdis-infra-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    # moto serves plain http://, where the TLS-only policy denies every request: made only without it (below)
    first = run(bucket, "--trial-days", "14", "--no-tls-policy")
    assert first.returncode == 0, first.stderr
    assert "ready (without the TLS-only bucket policy: --no-tls-policy)" in first.stdout
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-trial-checkpoints"]["Expiration"]["Days"] == 14
    again = run(f"s3://{bucket}", "--trial-days", "21", "--no-tls-policy")  # idempotent; settings put again
    assert again.returncode == 0, again.stderr

    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    # a versioned bucket keeps an old version per write: one per .avdis-lock renewal (~5,800 a day a locked folder)
    assert rules["expire-noncurrent-versions"]["Filter"] == {"Prefix": ""}  # by prefix: "" is the whole bucket
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert rules["expire-noncurrent-versions"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert rules["expire-trial-checkpoints"]["Filter"] == {"Prefix": "trials/"}
    assert rules["expire-trial-checkpoints"]["Expiration"]["Days"] == 21  # the second run's value
    sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="shards/x", Body=b"x")  # usable over this endpoint
    # the policy the script puts over TLS (its plan's last call), put here by hand: it bites, this client talks plain
    # HTTP to moto, so object writes are refused
    (name, kwargs), = [call for call in create_bucket.plan(bucket, "us-east-1", 30, None) if call[0] == "put_bucket_policy"]
    deny_http = next(s for s in json.loads(kwargs["Policy"])["Statement"] if s["Sid"] == "DenyInsecureTransport")
    assert deny_http["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    s3.put_bucket_policy(**kwargs)
    with pytest.raises(ClientError, match="403|AccessDenied|Forbidden"):
        s3.put_object(Bucket=bucket, Key="shards/x", Body=b"x")


def test_a_plain_http_endpoint_is_refused_before_the_policy_locks_the_bucket(s3_server):
    """Against an S3-compatible server on plain http:// (MinIO on a laptop, moto here), the script made the bucket,
    put its TLS-only policy, and said "ready": every request to the bucket through that endpoint was then denied,
    avdis's writes of shards and sweeps and this script's own. Refused before any call, naming the endpoint and the
    flag; --no-tls-policy is refused where the endpoint is https://, where the policy must stay."""
    import boto3

    bucket = f"avdis-http-{uuid.uuid4().hex[:8]}"
    refused = run(bucket, "--region", "us-east-1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"{s3_server} is plain HTTP" in refused.stderr and "--no-tls-policy" in refused.stderr
    assert refused.stdout == ""
    assert bucket not in [b["Name"] for b in boto3.client("s3", endpoint_url=s3_server).list_buckets()["Buckets"]]
    over_tls = run(bucket, "--region", "us-east-1", "--no-tls-policy", "--endpoint-url", "https://127.0.0.1:1")
    assert over_tls.returncode == 2 and "--no-tls-policy is for an endpoint served over plain http://" in over_tls.stderr
    dry = run(bucket, "--region", "us-east-1", "--no-tls-policy", "--dry-run")  # the plan says what it leaves out
    assert dry.returncode == 0 and "put_bucket_policy" not in dry.stdout and "put_bucket_lifecycle" in dry.stdout


def test_dry_run_changes_nothing(s3_server):
    import boto3

    bucket = f"avdis-dry-{uuid.uuid4().hex[:8]}"
    out = run(bucket, "--region", "eu-west-1", "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("(")[0] for line in lines] == [
        "would call s3.create_bucket", "would call s3.put_public_access_block", "would call s3.put_bucket_encryption",
        "would call s3.put_bucket_lifecycle_configuration", "would call s3.put_bucket_policy",
    ]
    assert '"LocationConstraint": "eu-west-1"' in lines[0]
    assert bucket not in [b["Name"] for b in boto3.client("s3", endpoint_url=s3_server).list_buckets()["Buckets"]]


def test_dry_run_needs_no_credentials_but_a_region():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    assert run("avdis-x", "--dry-run", env=env).returncode == 2  # no region
    assert run("avdis-x", "--region", "us-east-1", "--dry-run", env=env).returncode == 0


def test_no_credentials_or_a_prefix_is_said_not_a_traceback():
    """Run without AWS credentials, or given s3://bucket/prefix, the script ended in botocore's NoCredentialsError or
    ParamValidationError traceback (the dry run printed a plan for a bucket named "bucket/prefix")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true")
    bare = run("avdis-x", "--region", "us-east-1", env=env)
    assert bare.returncode == 1 and "Traceback" not in bare.stderr, bare.stderr[-2000:]
    assert "s3.create_bucket on s3://avdis-x failed: Unable to locate credentials" in bare.stderr, bare.stderr
    prefixed = run("s3://avdis-x/shards", "--region", "us-east-1", "--dry-run", env=env)
    assert prefixed.returncode == 2 and "give the bucket's name (or s3://name), without a prefix" in prefixed.stderr
    assert prefixed.stdout == ""


def test_policy_files_are_valid_json_without_secrets():
    for name in ("lifecycle.json", "bucket-policy.json", "public-access-block.json", "node-s3-policy.json"):
        text = (SCRIPT.parent / name).read_text()
        json.loads(text.replace("${bucket}", "b"))
        assert "AKIA" not in text and "aws_secret" not in text.lower()
