"""On a GPU: tiles of the tiled W4A16 kernel for 64 < M < 512 (kernels/linear.pick_config).

Every configuration is checked against float64 first, then all are timed interleaved with
mxfp4.linear's default (mma_gemv_sweep.timed_configs), weights rotated past L2.
Run: PYTHONPATH=src python3 benchmarks/mid_m_sweep.py [M ...]   (default 128 256)
"""

import sys

from mma_gemv_sweep import timed_configs  # benchmarks/ is the script's directory

TILES = [(64, 64, 64, 4, 3), (64, 64, 128, 4, 3), (64, 64, 256, 4, 3), (64, 128, 64, 4, 3),
         (64, 128, 128, 4, 3), (64, 32, 128, 4, 3), (128, 128, 64, 8, 4), (128, 64, 64, 8, 3)]


def configs(m, n, kp):
    out = []
    for bn, bm, bk, warps, stages in TILES:
        for split in (1, 2, 4):
            if kp // split < 640 and split > 1:
                continue
            out.append(dict(BN=bn, BM=bm, BK=bk, SPLIT_K=split, GROUP_N=8, SWAP=True,
                            num_warps=warps, num_stages=stages))
    return out


def main(ms):
    for k, n, m, default, ranked, fl in timed_configs(ms, configs):
        print(f"{k}->{n} M={m} floor {fl:.1f}: default {default:.1f} us | " + " | ".join(
            f"{c['BN']}x{c['BM']}x{c['BK']} w{c['num_warps']} s{c['num_stages']} "
            f"split {c['SPLIT_K']}: {t:.1f}" for c, t in ranked[:5]), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [128, 256])
