"""The scheduled function's tasks: ``redrive`` dead letters, ``reconcile`` the state with CVC, ``heartbeat`` alerts.

``runner.run_task`` runs one ``events.timer.ScheduledTask`` under the task's lease (``lease.py``); the tasks live
in ``redrive.py``, ``reconcile_task.py`` and ``heartbeat.py``, their alerts in ``alerts.py``, and what they share
(settings, context, options, times) in ``context.py``. ``triggers/schedule.py`` is the adapter the handler calls.
docs/schedule.md describes the tasks, their payloads and their settings.
"""
