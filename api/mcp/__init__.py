"""Gantry's Model Context Protocol server: the portal's tools and resources for AI agents."""
