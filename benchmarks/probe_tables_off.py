"""One-off probe: `mxfp4 ...` with the Gluon dispatch tables emptied (ops.GLUON_AUTO,
kernels.moe.GLUON_MOE), the same-run baseline for the whole-model rows of issue 24.
PYTHONPATH=src python3 benchmarks/probe_tables_off.py bench model --batches 64,256"""
import sys

from mxfp4 import ops
from mxfp4.cli import main
from mxfp4.kernels import moe

ops.GLUON_AUTO, moe.GLUON_MOE = (), ()
sys.exit(main(sys.argv[1:]))
