"""Reports in plain ASCII, for a stream that cannot encode their symbols (Δ, ‖, ≤, σ, ...)."""

ASCII = {
    "Δ": "d",
    "‖": "||",
    "·": "*",
    "—": "-",
    "–": "-",
    "≤": "<=",
    "≥": ">=",
    "×": "x",
    "ε": "eps",
    "√": "sqrt",
    "−": "-",
    "σ": "sigma",
    "δ": "delta",
    "∂": "d",
    "ᵀ": "^T",
    "²": "^2",
    "⊙": "*",
    "→": "->",
    "…": "...",
    "≈": "~",
}


def transliterate(text: str) -> str:
    """Known symbols spelled in ASCII; any other non-ASCII character becomes ``?``."""
    out = "".join(ASCII.get(ch, ch) for ch in text)
    return out.encode("ascii", "replace").decode("ascii")
