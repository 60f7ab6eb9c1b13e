"""`mxfp4 viz` on a port that is taken: one line on stderr, a non-zero exit, no URL printed."""

import socket

import torch

from mxfp4.cli import main


def test_port_in_use_is_one_line_and_no_url(capsys):
    threads = torch.get_num_threads()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main(["viz", "--port", str(port)])
    out, err = capsys.readouterr()
    assert rc != 0
    assert "http://" not in out and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "in use" in lines[0], err
    assert torch.get_num_threads() == threads  # nothing set up for serving
