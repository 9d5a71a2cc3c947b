"""Local fake vendor servers for tests: each speaks enough of the vendor's real HTTP API for our
clients, records every request, and lets a test script outcomes. Run one with
:func:`tests.fakes.server.serve`; AWS goes through moto (:mod:`tests.fakes.moto`).
"""
