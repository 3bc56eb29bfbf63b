"""Blueprint placeholder: filled in by its issue."""

from flask import Blueprint

bp = Blueprint("sweeps", __name__)
