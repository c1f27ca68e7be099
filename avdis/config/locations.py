"""Where a config points: run and sweep folder names, storage locations (a local path or s3://bucket/prefix), and
the S3 region and endpoint botocore takes. One rule each, for a config's (checked when it is read) and, for the
region and endpoint, the environment's (`avdis.storage`)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit


def folder_name(field: str, name: str, parent: str) -> str:
    """`name` if it is one folder name under `parent` (a path could write outside it), else ValueError."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"{field} {name!r} must be one folder name: letters, digits, '.', '_' and '-', starting with "
                         f"a letter or digit (one started under a name with '/' is reached with the part before the "
                         f"last '/' added to {parent})")
    return name


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")  # s3:/b and S3://b too; a relative path `exp:1/out` is a path
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_GLOB = "[]*?"  # fsspec's glob characters


def location(value: str, local_only: bool = False) -> str:
    """`value` if it is a local path (or file://) or, unless `local_only`, s3://bucket[/prefix]; else ValueError.
    A mistyped URL (`s3:/b`, `S3://b`, `s3://`) would otherwise become a local folder named after it, and a job's
    results would land in a copy of the tree that is thrown away. An empty one would be the working directory."""
    if not value.strip():
        raise ValueError("empty; give a folder or s3://bucket/prefix (null, for a setting that has a default)")
    if not _SCHEME.match(value) or value.startswith("file://"):
        return value
    if value.startswith("s3://") and not local_only:
        bucket, *prefix = value.removeprefix("s3://").rstrip("/").split("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-'); "
                             "give s3://bucket/prefix")
        if "" in prefix:  # s3fs reads "a//b" as "a/b" when listing but not when writing: the work was lost at the end
            raise ValueError("holds an empty folder name ('//'); write s3://bucket/a/b")
        if dots := sorted({part for part in prefix if part in (".", "..")}):
            # Ray's storage (pathlib) drops a '.': a run's checkpoints under s3://b/a/./x went to a/x, where avdis's
            # own reads of a/./x never looked; s3://b/a/../x wrote under a folder named '..', not under x
            raise ValueError(f"holds {' and '.join(repr(d) for d in dots)} as a folder name, which S3 keeps as a "
                             "name, not as this folder or the one above (and Ray's storage drops a '.', writing "
                             "where avdis does not read); write s3://bucket/a/b")
        if pattern := sorted(set("".join(prefix)) & set(_GLOB)):  # s3fs deletes by pattern: a run's pruning
            raise ValueError(f"holds {' '.join(pattern)}, which s3fs reads as a pattern when it deletes (a run "
                             "under s3://b/exp[1] pruned another run's checkpoints under s3://b/exp1); name the "
                             "prefix without [ ] * ?")
        return "/".join([f"s3://{bucket}", *prefix])  # one spelling: a trailing '/' named another run
    kinds = "a local folder (copy the corpus out of object storage first)" if local_only else \
        "a local path or s3://bucket/prefix (the storage avdis reads and writes; schemes are lowercase)"
    raise ValueError(f"not {kinds}")


def region_fault(region: str | None) -> str | None:
    """Why botocore refuses `region` ('is not a region name botocore takes: ...'), None where it takes it or there is
    none: the one rule for s3.region (`S3Config`) and the region of the environment or AWS profile
    (`avdis.storage.check_environment`). botocore's rule (`botocore.utils.validate_region_name`, one DNS label) matched
    whole, not botocore's own check, whose `$` lets a trailing newline through ('eu-west-1\\n', as a Kubernetes
    ConfigMap made from a file gives it), which failed at the first S3 call as 'Invalid endpoint'. No narrower: S3
    servers other than AWS take names of their own (MinIO us-east-1, Garage garage, Ceph default)."""
    if not region or re.fullmatch(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)", region):
        return None
    return ("is not a region name botocore takes: letters, digits and '-' (at most 63, not all digits, no '-' first or "
            "last), e.g. eu-west-1, or the one your S3 server names")


def endpoint_fault(url: str | None) -> str | None:
    """Why `url` is no S3 endpoint botocore takes ('is not an endpoint URL; ...'), None where it is or there is none:
    the one rule for s3.endpoint_url (`S3Config`) and the endpoint of the environment or AWS profile
    (`avdis.storage.check_environment`). An http:// or https:// URL, in either case (botocore checks no scheme:
    AWS_ENDPOINT_URL=s3://minio:9000 passed) whose host botocore takes (`is_valid_endpoint_url`, imported here only
    where an endpoint is given: ~70 ms), a DNS name or an IP address: s3.endpoint_url=http://minio_1:9000 (a Compose
    container's name) failed at the first S3 call as 'cannot reach storage (ValueError: Invalid endpoint ...)'. Its
    port and query as botocore's endpoint resolution reads them (`botocore.endpoint_provider`'s parse_url), which
    refused 'http://minio:9000 ' (a space after it), port 99999 or '...?region=x' only at the first call ('Custom
    endpoint ... was not a valid URI')."""
    if not url:
        return None
    if url[0].isspace():  # the advice below would put the spaces after http://
        return "is not an endpoint URL; it starts with a space: remove it"
    if not re.match(r"https?://[^/]", url, re.IGNORECASE):  # botocore reads HTTPS:// as https://
        host = url.split(":", 1)[1].lstrip("/") if re.match(r"[A-Za-z][\w+.-]*:/", url) else url
        return f"is not an endpoint URL; give it with its scheme, e.g. http://{host}"
    if re.search(r"[\t\r\n]", url):  # botocore's UNSAFE_URL_CHARS: its host check below refuses them too
        return ("is not an endpoint URL botocore takes: it holds a line break or tab (a file's last newline, say); "
                "remove it")
    import botocore.utils

    if not (botocore.utils.is_valid_endpoint_url(url) or botocore.utils.is_valid_ipv6_endpoint_url(url)):
        return ("is not an endpoint URL botocore takes: its host must be an IP address or a DNS name (letters, digits, "
                "'-' and '.'), e.g. http://minio:9000")
    parts = urlsplit(url)
    try:
        parts.port  # reading it raises where botocore cannot read it
    except ValueError:
        return ("is not an endpoint URL botocore takes: its port must be a number up to 65535, with nothing after it "
                "(no space), e.g. http://minio:9000")
    if parts.query:
        return "is not an endpoint URL botocore takes: it has a query ('?...'), which botocore refuses; remove it"
    return None
