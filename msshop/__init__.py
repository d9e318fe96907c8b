"""msshop: a shop split into services, to see, measure and teach how they share data."""

__version__ = "0.1.0"
