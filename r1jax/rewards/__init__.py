"""Rule-based and learned rewards: pure functions of completion text and reference answers.

Each module registers its rewards with `registry.register` / `registry.register_verifier`; the
registry discovers every module of this package on first use (registry.py).
"""
