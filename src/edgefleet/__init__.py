"""edgefleet: run jobs on outbound-only edge workers, steered centrally at runtime."""

__version__ = "0.1.0"
