"""Blueprint placeholder: filled in by its issue."""

from flask import Blueprint

bp = Blueprint("pages", __name__)
