"""The model service: a Flask app under gunicorn that predicts, takes feedback and monitors."""
