"""Create the avdis bucket with its guard rails: no public access, TLS only, default
encryption, and lifecycle rules (see README.md beside this file).

    python infra/storage/create_bucket.py my-avdis-bucket --region us-east-1 [--dry-run]

Credentials, region and endpoint come from the usual AWS sources (environment, profile,
instance role) or the flags; nothing is stored here. Safe to run again on a bucket you
own: every setting is put again, nothing is deleted. Needs boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from string import Template
from typing import Any

HERE = Path(__file__).resolve().parent


def _load(name: str, **values: str) -> Any:
    return json.loads(Template((HERE / name).read_text()).substitute(values))


def plan(bucket: str, region: str, trial_days: int, kms_key_id: str | None,
         tls_policy: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """The S3 API calls, in order, that set the bucket up (without the TLS-only bucket policy where not `tls_policy`)."""
    create: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    lifecycle = _load("lifecycle.json")
    for rule in lifecycle["Rules"]:
        if rule["ID"] == "expire-trial-checkpoints":
            rule["Expiration"]["Days"] = trial_days
    sse: dict[str, Any] = {"SSEAlgorithm": "AES256"}
    if kms_key_id:
        sse = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id}
    encryption = {"Rules": [{"ApplyServerSideEncryptionByDefault": sse, "BucketKeyEnabled": bool(kms_key_id)}]}
    calls = [
        ("create_bucket", create),
        ("put_public_access_block", {"Bucket": bucket, "PublicAccessBlockConfiguration": _load("public-access-block.json")}),
        ("put_bucket_encryption", {"Bucket": bucket, "ServerSideEncryptionConfiguration": encryption}),
        ("put_bucket_lifecycle_configuration", {"Bucket": bucket, "LifecycleConfiguration": lifecycle}),
    ]
    if tls_policy:
        calls.append(("put_bucket_policy", {"Bucket": bucket,
                                            "Policy": json.dumps(_load("bucket-policy.json", bucket=bucket))}))
    return calls


def plain_http(endpoint: str | None) -> bool:
    """Whether requests go to `endpoint` (the client's, after the flag, AWS_ENDPOINT_URL and the profile) without
    TLS: there the TLS-only policy denies every request, this script's and avdis's alike."""
    return bool(endpoint) and endpoint.lower().startswith("http://")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bucket", help="bucket name (or s3://name)")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
                   help="default: AWS_DEFAULT_REGION / AWS_REGION")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint; default: AWS_ENDPOINT_URL or AWS")
    p.add_argument("--trial-days", type=int, default=30, help="days before trials/ checkpoints expire (default 30)")
    p.add_argument("--kms-key-id", default=None, help="SSE-KMS key for default encryption (default: SSE-S3)")
    p.add_argument("--no-tls-policy", action="store_true",
                   help="leave out the bucket policy that denies requests not over TLS, for an S3-compatible server "
                        "served over plain http:// (MinIO on a laptop), which it would lock out; refused otherwise")
    p.add_argument("--dry-run", action="store_true", help="print the calls, change nothing")
    args = p.parse_args(argv)
    bucket = args.bucket.removeprefix("s3://").strip("/")
    if "/" in bucket:  # its policy's ARNs and every call would name "bucket/prefix"
        p.error(f"{args.bucket}: give the bucket's name (or s3://name), without a prefix; avdis writes under "
                "prefixes of the bucket itself")
    if not args.region:
        p.error("no region: pass --region or set AWS_DEFAULT_REGION")
    if args.trial_days < 1:
        p.error("--trial-days must be >= 1")
    calls = plan(bucket, args.region, args.trial_days, args.kms_key_id, tls_policy=not args.no_tls_policy)
    if args.dry_run:
        for name, kwargs in calls:
            print(f"would call s3.{name}({json.dumps(kwargs, sort_keys=True)})")
        return 0

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3", region_name=args.region, endpoint_url=args.endpoint_url)
    endpoint = s3.meta.endpoint_url
    # checked before any call: with the policy put over plain HTTP, every later request to the bucket (objects, and
    # its policy) was denied while this script said it was ready
    if plain_http(endpoint) and not args.no_tls_policy:
        p.error(f"{endpoint} is plain HTTP, and the bucket policy this script puts (bucket-policy.json) denies every "
                "request not over TLS: through this endpoint neither avdis nor this script could use the bucket. "
                "Serve the endpoint over https://, or pass --no-tls-policy to make the bucket without that policy")
    if args.no_tls_policy and not plain_http(endpoint):
        p.error(f"--no-tls-policy is for an endpoint served over plain http://; {endpoint} is not: the bucket keeps "
                "its TLS-only policy there (drop the flag)")
    for name, kwargs in calls:
        try:
            getattr(s3, name)(**kwargs)
        except ClientError as exc:
            if name == "create_bucket" and exc.response["Error"]["Code"] == "BucketAlreadyOwnedByYou":
                print(f"s3://{bucket}: exists and is yours; applying its settings again")
                continue
            print(f"s3.{name} on s3://{bucket} failed: {exc}", file=sys.stderr)
            return 1
        except BotoCoreError as exc:  # no credentials, no endpoint, a name S3 refuses: said, not a traceback
            print(f"s3.{name} on s3://{bucket} failed: {exc}", file=sys.stderr)
            return 1
        print(f"s3.{name}: done")
    print(f"s3://{bucket} ready" + (" (without the TLS-only bucket policy: --no-tls-policy)" if args.no_tls_policy
                                     else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
