"""Rule-based and learned rewards: pure functions of completion text and reference answers."""
