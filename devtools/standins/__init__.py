"""Local stand-ins for vendors: small HTTP servers that speak enough of a vendor's real API for
Gantry's activities, and record what they receive.

``make run`` serves the Jira and Slack ones when their settings are not set, so the example
portal works with no credentials; the tests serve them (through :mod:`tests.fakes`) to script
vendor behaviour. Run one in-process with :func:`devtools.standins.server.serve`, or as a
process with uvicorn and the module's ``create_app`` factory.
"""
