"""marshmallow schemas, one module per blueprint, plus shared fields."""
