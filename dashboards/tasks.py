from celery import shared_task

from dashboards.stats import day_counts_warm


@shared_task(name="dashboards.tasks.warm_day_counts", acks_late=True, ignore_result=True)
def warm_day_counts() -> int:
    """Beat, shortly after each quarter-hour: count the quarter-hour just over for every team's day
    panels (and its latency histogram, the day latency's) into the cache the overview reads
    (idempotent: what is cached is not counted again)."""
    return day_counts_warm()
