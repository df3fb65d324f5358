"""Time units of the engine, in one place: every time inside the engine is an integer number of
milliseconds (event time: since the Unix epoch, UTC; a duration: a difference of two). Settings
are durations (``timedelta``) turned into ms once, by ``config.settings.ms``."""

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
