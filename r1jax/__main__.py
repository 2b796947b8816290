from r1jax.cli import run

run()
