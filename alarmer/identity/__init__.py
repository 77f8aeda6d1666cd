"""Who may call alarmer: API keys stored hashed in the database."""
