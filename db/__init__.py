"""The review database: who reviewed which direction, what was published, which looks were saved.

- ``db.engine``   engines and sessions (``write_session`` / ``read_session``); SQLite by default, PostgreSQL when
                  ``ATELIER_DATABASE_URL`` names one
- ``db.migrate``  Alembic migrations (``upgrade``, ``current``, ``downgrade``, ``ensure_current`` for app start-up)
- ``db.queries``  every read and write of the tables pages make; ``db.records`` the plain dataclasses they return
- ``db.rules``    the checks every write makes (field, bad value, allowed range), the review vocabularies
- ``db.review_queue``  what the reviews add up to: status, the review order and queue, progress, agreement
- ``db.schema``   the tables; ``db.agreement`` Krippendorff's alpha

Importing ``db`` itself stays cheap (no SQLAlchemy), so ``atelier --help`` stays fast.
"""
