from jobs.cli import register as register_worker_commands
from webapp import create_app

app = create_app()
register_worker_commands(app)  # flask --app wsgi worker | scheduler | host-guard | egress-rules
