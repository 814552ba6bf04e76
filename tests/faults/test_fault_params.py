"""Run parameters stay inside their placeholders: a file path takes no separators, ``..`` or glob
characters from a parameter (unless sub-paths are allowed, still under the template's directory),
and a value in an HTTP URL is percent-encoded for its part of the URL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from faultserver import FaultServer, Reply, Request

from ductwork import (
    Batch,
    ConfigError,
    ExtractError,
    IncrementalConfig,
    LoadError,
    MemoryStateStore,
    PipelineError,
    create_el_pipeline,
    create_file_extractor,
    create_file_loader,
    create_http_extractor,
)


async def rows(ctx: Any) -> AsyncIterator[Batch]:
    yield [{"id": 1}]


def write_tree(root: Path) -> None:
    for name in ("eu", "us", "private"):
        (root / name).mkdir(parents=True)
        (root / name / "data.jsonl").write_text(f'{{"region": "{name}"}}\n')


async def run(pipeline: Any, **params: str) -> None:
    with anyio.fail_after(10):
        await pipeline.run(params=params)


@pytest.mark.parametrize("dest", ["../../x", "../x", "a/b", "a\\b", "..", "/tmp/x", "~root"])
async def test_the_loader_never_writes_outside_its_directory(tmp_path: Path, dest: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    loader = create_file_loader(str(out / "{dest}.jsonl"))
    with pytest.raises(LoadError) as info:
        await run(create_el_pipeline(rows, loader, logging=False), dest=dest)
    assert "'dest'" in str(info.value)
    assert isinstance(info.value.__cause__, ConfigError)
    assert info.value.__cause__.errors[0][0] == "params.dest"
    assert info.value.retryable is False
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]


@pytest.mark.parametrize("region", ["../private", "*", "e?", "[ep]*", "eu/../private"])
async def test_the_extractor_never_reads_outside_its_directory(tmp_path: Path, region: str) -> None:
    write_tree(tmp_path)
    seen: list[dict[str, Any]] = []
    extractor = create_file_extractor(str(tmp_path / "eu" / "{region}" / "*.jsonl"))
    with pytest.raises(ExtractError, match="'region'"):
        with anyio.fail_after(10):
            await create_el_pipeline(extractor, seen.extend, logging=False).run(
                params={"region": region}
            )
    assert seen == []


async def test_sub_paths_when_allowed_stay_under_the_template_directory(tmp_path: Path) -> None:
    write_tree(tmp_path)
    seen: list[dict[str, Any]] = []
    template = str(tmp_path / "{region}" / "data.jsonl")
    extractor = create_file_extractor(template, allow_subpaths=True)
    pipeline = create_el_pipeline(extractor, seen.extend, logging=False)
    await pipeline.run(params={"region": "eu"})
    assert seen == [{"region": "eu"}]
    (tmp_path / "eu" / "west").mkdir()
    (tmp_path / "eu" / "west" / "data.jsonl").write_text('{"region": "eu/west"}\n')
    await pipeline.run(params={"region": "eu/west"})
    assert seen[-1] == {"region": "eu/west"}
    for escape in ("../eu", "eu/../private", "/etc", "eu/*"):
        with pytest.raises(ExtractError, match="'region'"):
            await pipeline.run(params={"region": escape})


def echo(request: Request, reply: Reply) -> None:
    reply.send([{"path": request.raw_path}])


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("../admin?x=1#", "/v1/regions/..%2Fadmin%3Fx%3D1%23/items"),
        ("eu west", "/v1/regions/eu%20west/items"),
        ("a%2Fb", "/v1/regions/a%252Fb/items"),
    ],
)
async def test_url_path_values_are_percent_encoded(api: FaultServer, value: str, path: str) -> None:
    api.route("/v1/regions/" + path.split("/")[3] + "/items", echo)
    got: list[dict[str, Any]] = []
    extractor = create_http_extractor(api.url + "/v1/regions/{region}/items")
    with anyio.fail_after(10):
        await create_el_pipeline(extractor, got.extend, logging=False).run(params={"region": value})
    assert got == [{"path": path}]
    assert [r.path for r in api.seen()] != ["/admin"]


@pytest.mark.parametrize("value", ["..", "."])
async def test_a_dot_segment_in_a_url_path_is_refused(api: FaultServer, value: str) -> None:
    extractor = create_http_extractor(api.url + "/v1/{region}/items")
    with pytest.raises(PipelineError, match="'region'"):
        await create_el_pipeline(extractor, lambda batch: None, logging=False).run(
            params={"region": value}
        )
    assert api.seen() == []


async def test_last_value_from_the_server_is_encoded_in_the_url(api: FaultServer) -> None:
    def since(request: Request, reply: Reply) -> None:
        reply.send([{"path": request.raw_path, "updated_at": "2024-01-01T00:00:00+00:00&x=/"}])

    api.route("/events", since)
    state = MemoryStateStore()
    got: list[dict[str, Any]] = []
    extractor = create_http_extractor(
        api.url + "/events?since={last_value}",
        incremental=IncrementalConfig(cursor_field="updated_at"),
    )
    pipeline = create_el_pipeline(extractor, got.extend, logging=False, state=state)
    await pipeline.run()
    await pipeline.run()
    assert got[-1]["path"] == "/events?since=2024-01-01T00%3A00%3A00%2B00%3A00%26x%3D%2F"
    assert api.seen()[-1].query == {"since": "2024-01-01T00:00:00+00:00&x=/"}


PIPELINES = textwrap.dedent(
    """
    from ductwork import create_el_pipeline, create_file_loader

    async def rows(ctx):
        yield [{"id": 1}]

    PIPELINE_REGISTRY = {
        "export": {
            "pipeline": lambda: create_el_pipeline(rows, create_file_loader("out/{dest}.jsonl")),
        },
    }
    """
)


def test_ductwork_run_refuses_a_parameter_that_escapes(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "export_pipeline.py").write_text(PIPELINES)
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "ductwork", "run", "export"]
    done = subprocess.run(
        [*command, "--param", "dest=../../x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "'dest'" in done.stderr
    assert not (tmp_path.parent / "x.jsonl").exists()
    assert list((tmp_path / "out").iterdir()) == []
    done = subprocess.run(
        [*command, "--param", "dest=daily"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "daily.jsonl").read_text() == '{"id":1}\n'


@pytest.mark.parametrize(
    ("template", "value", "problem"),
    [
        ("http://{host}.example.com/x", "evil.com/", "not a host name part"),
        ("http://{host}.example.com/x", "a..b", "not a host name part"),
        ("http://127.0.0.1/{}", "x", "positional placeholder"),
    ],
)
async def test_url_placeholders_outside_the_path(template: str, value: str, problem: str) -> None:
    extractor = create_http_extractor(template)
    with pytest.raises(PipelineError, match=problem):
        await create_el_pipeline(extractor, lambda batch: None, logging=False).run(
            params={"host": value}
        )


async def test_a_host_part_and_a_nested_format_spec_are_filled(api: FaultServer) -> None:
    api.route("/v1/00eu/items", echo)
    got: list[dict[str, Any]] = []
    url = api.url.replace("127.0.0.1", "{host}") + "/v1/{region:>0{width}}/items"
    extractor = create_http_extractor(url)
    await create_el_pipeline(extractor, got.extend, logging=False).run(
        params={"host": "127.0.0.1", "region": "eu", "width": "4"}
    )
    assert got == [{"path": "/v1/00eu/items"}]
