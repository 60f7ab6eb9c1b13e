"""float64 oracle for the W4A16 linear tests: x @ dequantize(W).T (+ bias)."""


def linear_rel_err(y, x, w, b) -> float:
    """Relative Frobenius error of y against float64 math on the dequantized MXTensor w."""
    ref = x.double() @ w.dequantize().double().T
    if b is not None:
        ref = ref + b.double()
    return ((y.cpu().double() - ref).norm() / ref.norm()).item()
