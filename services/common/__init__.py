"""What every EmoGo service shares. It never imports a service."""
