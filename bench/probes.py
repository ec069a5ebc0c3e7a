"""What the benchmarks share to measure: the independent Kafka consumer that sees what a reader would see, and what
a process costs the machine (CPU, and time spent waiting for a core: on 2 busy cores, the tail of every latency)."""

from __future__ import annotations

import os
from pathlib import Path

from aiokafka import AIOKafkaConsumer


def measuring_consumer(bootstrap: str, *topics: str, from_start: bool = False) -> AIOKafkaConsumer:
    """A read_committed consumer outside any group (nothing committed), from the end of the topics unless
    `from_start`. Its fetch wait is 10 ms: the broker may hold a read_committed fetch to its deadline even after the
    relay's commit (seen as 1.4-1.5 s pauses with Faust's 1,500 ms), and that is not the latency being measured."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_start else "latest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=10,
    )


def stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15, starttime 22.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, its children that exited (waited for) and those alive: PostgreSQL works in one backend process
    per connection, FerretDB's among them."""
    fields = stat_fields(pid)
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for child in children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:
            continue  # ended meanwhile: its time is in the parent's waited-for children above, or lost with it
    return total


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(stat_fields(int(entry.name))[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


# Processes whose work is partly done by child processes: PostgreSQL's connection backends (FerretDB's among them),
# the relay's binlog decoder.
WITH_CHILDREN = frozenset({"postgresql", "relay"})


def run_queue_seconds(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a core (the scheduler's run-queue delay, the
    second field of each thread's /proc schedstat), summed over the threads alive now."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def tree_run_queue_seconds(pid: int) -> float:
    """`run_queue_seconds` of a process and its live children."""
    total = run_queue_seconds(pid)
    for child in children(pid):
        try:
            total += run_queue_seconds(child)
        except OSError:
            continue  # ended meanwhile
    return total


def cpu_pressure_seconds() -> float:
    """The machine's CPU pressure so far (PSI "some": seconds during which at least one runnable task waited for a
    core), or NaN where the kernel does not report it."""
    try:
        lines = Path("/proc/pressure/cpu").read_text().splitlines()
    except OSError:
        return float("nan")  # no PSI in this kernel: printed as nan, the other figures do not depend on it
    some = [line for line in lines if line.startswith("some ")]
    return int(some[0].rsplit("total=", 1)[1]) / 1e6 if some else float("nan")
