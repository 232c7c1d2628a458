from integrations.cli import app

app()
