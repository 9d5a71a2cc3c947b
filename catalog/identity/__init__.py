"""Identity and access: users, teams, API tokens, principals and permission policies."""
