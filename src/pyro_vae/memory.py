"""Process-wide memory settings that only a program (the CLI), never an import, may make.

glibc's malloc serves a request above its *mmap threshold* with a fresh ``mmap`` that goes
back to the system on ``free``; below it, from the heap, whose freed holes may be reused only
partly (fragmentation) and are rarely returned. The threshold is dynamic by default: each
freed mmapped block raises it to that block's size, up to 32 MiB. The log-likelihood
estimator allocates chunk tensors of about 31 MiB ([10,000 x 784] float32): after the first
is freed they move to the heap, and the peak resident memory of four identical runs of
``pyro-vae evaluate --k 5000`` ranged from 1 to 7 GiB. Fixing the threshold (which also
turns its dynamic growth off) sends every large tensor back to ``mmap``, so the peak is
that of the live tensors whatever the order of the frees.

A fresh mmap costs a page fault per 4 KiB page when first written (about 15 ms for 31 MB on
the shared machine, where a reused buffer fills in 6 ms), so the estimator on the CPU sizes
its chunks to stay *under* the threshold (:mod:`pyro_vae.inference.loglik`): the same few
sizes then come back from the heap every chunk, with no fault and no fragmentation to speak
of. For that the heap must keep its free top: fixing the mmap threshold leaves glibc's *trim*
threshold at its 128 KiB default, which hands the top of the heap back after every chunk and
faults it in again, so it is fixed too, at 64 MiB (a bound on what the heap keeps unused).

Reuse holds only while nothing outlives a chunk: a small tensor kept per chunk (the
estimator once kept each image's result in a list) is carved from a free hole of the heap,
and where it lands in a hole the next chunk's 4 MB tensors need, they no longer fit there and
the heap grows. Which hole it lands in depends on the free lists at that instant, which an
allocation at a time rather than at a step (a progress line every 30 s) shifts: so some runs
of ``evaluate --k 20000 --limit 1000`` grew by about 1 MiB an image (peak 1.4 GiB) and others
stayed flat (395 MiB). The estimator now allocates its results once (issue #16, tenth pass).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` parameters of ``mallopt`` (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Requests of 4 MiB and more are mmapped (a conv decoder's feature maps in the estimator),
#: while a training step's tensors at batch 128-512 (MLP activations under 2 MiB) and the
#: estimator's CPU chunks of MLP outputs (sized under it) stay on the heap.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse rather than handed back (and faulted in
#: again at the next chunk); it bounds what the process holds beyond its live tensors.
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES, trim: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes and its trim threshold at ``trim``
    bytes for this process; True if both were set (False elsewhere than Linux with glibc,
    where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1 and mallopt(M_TRIM_THRESHOLD, int(trim)) == 1


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim(0)``); True if
    anything was released. Tensors under the mmap threshold (an estimator chunk's hidden
    activations and codes, 1-4 MiB) live on the heap, and the holes they leave are reused
    only in part, so a long evaluation's resident memory creeps up with the luck of the
    frees; trimming after each chunk keeps it at the live tensors. It changes no setting
    (a library may call it), costs one walk of the heap, and does nothing off glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return trim(0) == 1
