"""The query language: one compiler to SQL, shared by search, scorecard rules, action conditions and read filters."""
