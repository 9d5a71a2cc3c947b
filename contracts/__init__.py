"""Typed messages that cross a process boundary between the API, the worker and workflows.

Plain dataclasses on Temporal's default JSON converter: field names are the wire format, so
recorded histories stay decodable. Readers are tolerant by construction: the converter ignores
fields it does not know (a newer peer's additions), and a missing required field (one without a
default) fails the decode loudly instead of becoming a default. New fields therefore need a
default. Nothing here imports I/O libraries: the workflow sandbox imports these modules.
"""
