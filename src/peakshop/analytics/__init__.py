"""Sales analytics: a daily roll-up kept by a scheduled job, read with today's partial day
computed live."""
