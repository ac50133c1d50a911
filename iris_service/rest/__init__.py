"""The HTTP layer: the Flask app, the one extension state, blueprints with their schemas, and middleware.

It calls the data plane (``serving``) and the protocol units (``protocols``);
nothing below it imports Flask.
"""
