"""LearnHub in and beside the Hub: settings, access, auth, spawner, service, billing, store, CLI."""
