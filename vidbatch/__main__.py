"""`python -m vidbatch ...` is the `vidbatch` command."""
from vidbatch.cli import app

app(prog_name="vidbatch")
