"""Downloads and playback: ranges as browsers send them, caching, names, roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack
from tests.ingest.conftest import new_participant
from tests.media.conftest import h264_video, sha256, upload
from tests.support import documented_path_form


@pytest.fixture(scope="module")
def stored(stack, videos: dict[str, bytes]) -> Iterator[tuple[dict, bytes]]:
    data = videos["h264"]
    with stack.client("device") as device:
        response = upload(device, new_participant(), data, title="Été à Taipei")
        assert response.status_code == 201, response.text
        yield response.json()["vlog"], data


def test_whole_file_with_validators(viewer: httpx.Client, stored: tuple[dict, bytes]) -> None:
    vlog, data = stored
    response = viewer.get(vlog["download_url"])
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == f'"{sha256(data)}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == "video/mp4"
    # A readable name from the title, with an ASCII fallback (RFC 6266).
    assert response.headers["content-disposition"] == (
        'attachment; filename="Ete a Taipei.mp4"; '
        "filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20Taipei.mp4"
    )


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, None),
        ("bytes=-500", -500, None),
        ("bytes=5-999999999", 5, None),
    ],
)
def test_single_ranges_give_206(
    viewer: httpx.Client, stored: tuple[dict, bytes], header: str, first: int, last: int | None
) -> None:
    vlog, data = stored
    response = viewer.get(vlog["download_url"], headers={"Range": header})
    assert response.status_code == 206
    expected = data[first:] if last is None else data[first : last + 1]
    assert response.content == expected
    start = first if first >= 0 else len(data) + first
    end = start + len(expected) - 1
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(
    "header", ["bytes={size}-", "bytes={size}-{size}", "bytes=-0", "bytes=20-10"]
)
def test_unsatisfiable_ranges_give_416(
    viewer: httpx.Client, stored: tuple[dict, bytes], header: str
) -> None:
    vlog, data = stored
    response = viewer.get(vlog["download_url"], headers={"Range": header.format(size=len(data))})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"
    assert response.json()["code"] == 416


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-1", "bytes=abc"])
def test_ranges_we_do_not_serve_give_the_whole_file(
    viewer: httpx.Client, stored: tuple[dict, bytes], header: str
) -> None:
    vlog, data = stored
    response = viewer.get(vlog["download_url"], headers={"Range": header})
    assert response.status_code == 200
    assert response.content == data


def test_head_gives_the_headers_of_the_download_without_its_bytes(
    viewer: httpx.Client, stored: tuple[dict, bytes]
) -> None:
    vlog, data = stored
    whole = viewer.get(vlog["download_url"])
    head = viewer.head(vlog["download_url"])
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "content-type", "etag", "accept-ranges", "content-disposition"):
        assert head.headers[name] == whole.headers[name], name
    part = viewer.head(vlog["download_url"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == b""
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    # The connection is still good for the next request.
    assert viewer.get(vlog["download_url"], headers={"Range": "bytes=0-3"}).content == data[:4]


def test_if_range_and_if_none_match(viewer: httpx.Client, stored: tuple[dict, bytes]) -> None:
    vlog, data = stored
    etag = f'"{sha256(data)}"'
    fresh = viewer.get(vlog["download_url"], headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206
    assert fresh.content == data[:10]
    stale = viewer.get(vlog["download_url"], headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200
    assert stale.content == data
    cached = viewer.get(vlog["download_url"], headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag


def test_playback_is_inline_and_seekable(viewer: httpx.Client, stored: tuple[dict, bytes]) -> None:
    vlog, data = stored
    response = viewer.get(vlog["play_url"], headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == data[100:200]
    assert response.headers["content-disposition"].startswith("inline;")


def test_the_seed_download_path(viewer: httpx.Client, stored: tuple[dict, bytes]) -> None:
    vlog, data = stored
    assert vlog["video_url"] == f"/api/vlogs/download/{vlog['_id']}.mp4"
    assert viewer.get(vlog["video_url"]).content == data
    missing = viewer.get("/api/vlogs/download/0123456789abcdef01234567.mp4")
    assert missing.status_code == 404
    assert missing.json()["detail"]["error"] == "Video file not found"
    assert viewer.get("/api/vlogs/download/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    # The document tells clients the forms the service accepts: the id, with or
    # without the file name's extension.
    form = documented_path_form(viewer, "media", "/api/vlogs/download/{filename}")
    assert form.search(f"{vlog['_id']}.mp4")
    assert form.search(vlog["_id"])
    assert not form.search("..%2F..%2Fetc%2Fpasswd")


def test_roles_for_reading(stack, stored: tuple[dict, bytes]) -> None:
    vlog, _ = stored
    with stack.client() as anonymous, stack.client("device") as device:
        for url in (vlog["download_url"], vlog["play_url"], vlog["thumbnail_url"], "/api/vlogs"):
            assert anonymous.get(url).status_code == 401, url
            assert device.get(url).status_code == 403, url


def test_the_byte_routes_answer_in_the_media_types_they_document(
    stack: Stack, viewer: httpx.Client, tmp_path: Path
) -> None:
    """Downloads, plays and thumbnails were documented as JSON; each answer's type is now
    one its operation documents (a range, 206, too)."""
    with stack.client("device") as device:
        video = h264_video(tmp_path / "typed.mp4", 41)
        uploaded = device.post(
            "/api/vlogs/upload",
            data={"user_id": f"typed-{uuid.uuid4().hex[:6]}"},
            files={"video": ("typed.mp4", video, "video/mp4")},
        )
    vlog_id = uploaded.json()["vlog"]["_id"]
    document = viewer.get("/docs/media/openapi.json").json()["paths"]
    answers = {
        ("/api/vlogs/{vlog_id}/download", "200"): viewer.get(f"/api/vlogs/{vlog_id}/download"),
        ("/api/vlogs/{vlog_id}/play", "206"): viewer.get(
            f"/api/vlogs/{vlog_id}/play", headers={"Range": "bytes=0-99"}
        ),
        ("/api/vlogs/{vlog_id}/thumbnail", "200"): viewer.get(f"/api/vlogs/{vlog_id}/thumbnail"),
        ("/api/vlogs/download/{filename}", "200"): viewer.get(f"/api/vlogs/download/{vlog_id}.mp4"),
    }
    for (path, status), answer in answers.items():
        assert str(answer.status_code) == status, path
        served = answer.headers["content-type"].split(";")[0]
        documented = document[path]["get"]["responses"][status]["content"]
        assert any(
            served == kind or (kind.endswith("/*") and served.startswith(kind[:-1]))
            for kind in documented
        ), (path, served, list(documented))
        assert "application/json" not in documented, path
