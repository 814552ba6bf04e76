"""The file loader after a writer was killed: its temporary file is removed, live ones are kept.

A writer holds a lock on its temporary file while it writes; SIGKILL cannot remove the file, but
the lock dies with the process, and the next sink opened in the directory removes the file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ductwork import RunContext, create_file_loader

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import anyio

    from ductwork import RunContext, create_file_loader

    async def main(folder):
        loader = create_file_loader(folder / "out.jsonl")
        async with loader.open(RunContext(pipeline="killed")) as sink:
            await sink.write([{"n": 1}])
            (folder / "writing").write_text("")
            while True:
                time.sleep(1)  # killed here, mid-write

    anyio.run(main, Path(sys.argv[1]))
    """
)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def kill_a_writer(folder: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (folder / "writing").exists():
            assert writer.poll() is None, "the writer ended before writing"
            assert time.monotonic() < deadline, "the writer did not start writing"
            time.sleep(0.02)
        (left,) = temp_files(folder)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    return left


async def test_a_killed_writers_temporary_file_is_removed_by_the_next_sink(
    tmp_path: Path,
) -> None:
    left = kill_a_writer(tmp_path)
    assert left.startswith(".out.jsonl.")
    assert temp_files(tmp_path) == [left]  # SIGKILL left it behind
    loader = create_file_loader(tmp_path / "other.jsonl")
    async with loader.open(RunContext(pipeline="next")) as live:
        # The dead writer's file is gone; this sink's own (locked) file stays while it writes.
        assert temp_files(tmp_path) == [os.path.basename(str(live.temp_path))]
        again = create_file_loader(tmp_path / "third.jsonl")
        async with again.open(RunContext(pipeline="third")) as third:
            await third.write([{"n": 3}])
        assert temp_files(tmp_path) == [os.path.basename(str(live.temp_path))]
        await live.write([{"n": 2}])
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.jsonl", "third.jsonl", "writing"]
    assert not (tmp_path / "out.jsonl").exists()  # the killed writer's output never appeared


async def test_files_that_only_look_alike_are_left_alone(tmp_path: Path) -> None:
    for name in (".notes.tmp", "data.0123456789ab.tmp", ".x.0123456789AB.tmp"):
        (tmp_path / name).write_text("keep")
    async with create_file_loader(tmp_path / "out.jsonl").open(RunContext()) as sink:
        await sink.write([{"n": 1}])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".notes.tmp",
        ".x.0123456789AB.tmp",
        "data.0123456789ab.tmp",
        "out.jsonl",
    ]
