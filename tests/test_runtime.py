"""Process-level settings: the command line re-executes itself once with glibc's huge-page malloc tunable, and record
transforms run one BLAS thread per process."""

import subprocess
import sys

import numpy as np

from imujax import runtime
from run_helpers import REPO


def test_environment_adds_the_tunable_and_keeps_existing_ones():
    env = runtime.huge_page_environment({"PATH": "/bin"}, platform_ok=True)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": runtime.HUGE_PAGE_TUNABLE}
    env = runtime.huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, platform_ok=True)
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{runtime.HUGE_PAGE_TUNABLE}"


def test_no_reexecution_when_set_opted_out_or_unsupported():
    assert runtime.huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, platform_ok=True) is None
    assert runtime.huge_page_environment({runtime.OPT_OUT: "0"}, platform_ok=True) is None
    assert runtime.huge_page_environment({}, platform_ok=False) is None


def test_kernel_setting_is_read_from_the_bracketed_mode(tmp_path):
    setting = tmp_path / "enabled"
    for text, allowed in [("always [madvise] never\n", True), ("[always] madvise never\n", True),
                          ("always madvise [never]\n", False)]:
        setting.write_text(text)
        assert runtime._transparent_huge_pages_allowed(str(setting)) is allowed
    assert not runtime._transparent_huge_pages_allowed(str(tmp_path / "missing"))


def test_reexecution_keeps_arguments_and_pid_and_runs_once(tmp_path):
    """A script calling use_huge_pages() runs its body exactly once, with its arguments, in the same process."""
    script = tmp_path / "probe.py"
    log = tmp_path / "log"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {REPO!r})\n"
        f"open({str(log)!r}, 'a').write(f'start {{os.getpid()}}\\n')\n"
        "from imujax import runtime\n"
        "runtime.use_huge_pages()\n"
        "print(os.getpid(), os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:])\n")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(script), "--flag=1", "x"], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    pid, tunables, args = out.stdout.split(" ", 2)
    assert args.strip() == "['--flag=1', 'x']"
    starts = log.read_text().split()
    assert all(p == pid for p in starts[1::2])  # exec keeps the PID
    if runtime.huge_page_environment(env) is not None:  # this machine supports it: one re-execution
        assert len(starts) == 4 and runtime.HUGE_PAGE_TUNABLE in tunables
    else:
        assert len(starts) == 2 and tunables == ""


def test_record_transforms_pin_numpy_blas_to_one_thread():
    import threadpoolctl
    from imujax import input_pipeline

    transform = input_pipeline.CheckedTransform(lambda record, rng: {"x": np.ones(3, np.float32)})
    out = transform({"id": b"r0"})
    assert out["id"] == b"r0"
    blas = threadpoolctl.threadpool_info()
    assert blas and all(pool["num_threads"] == 1 for pool in blas if pool["user_api"] == "blas")


def test_release_free_memory_returns_a_fragmented_heap_to_the_os(tmp_path):
    """Freed heap chunks between live ones stay resident until malloc_trim: the state a compilation leaves."""
    script = tmp_path / "trim.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from imujax import runtime\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
        "chunks = [bytearray(b'x' * 100_000) for _ in range(3000)]  # ~290 MiB of heap chunks below mmap size\n"
        "kept = chunks[::10]\n"
        "del chunks\n"
        "before = rss()\n"
        "released = runtime.release_free_memory()\n"
        "print(released, before, rss(), len(kept))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=120)
    released, before, after, _ = out.stdout.split()
    if sys.platform != "linux":
        assert released == "False"
        return
    assert released == "True"
    assert float(before) - float(after) > 150, (before, after)  # most of the ~260 MiB freed between kept chunks
