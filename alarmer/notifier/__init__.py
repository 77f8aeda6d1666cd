"""The notifier service: outbox expansion, claims, deliveries, retries."""
