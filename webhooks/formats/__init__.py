"""The wire formats of a webhook (pure: no database, no network). Each turns a
``webhooks.messages.WebhookMessage`` into what is sent; the delivery engine
(webhooks/delivery.py) picks one by ``WebhookEndpoint.format``."""
