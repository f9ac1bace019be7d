"""The agent's process-wide settings: open-files limit and glibc's mmap threshold."""

from __future__ import annotations

import platform
import resource

import pytest

from services.rapl_agent.resources import raise_fd_limit, return_large_buffers


def test_the_open_files_limit_is_raised_to_the_hard_one():
    limit = raise_fd_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limit == soft and (soft == hard or hard == resource.RLIM_INFINITY)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_fixed_mmap_threshold():
    assert return_large_buffers() is True
