"""Windows ETW real-time source through pywintrace, rendered to the WHIDS/Gene JSON shape.

Providers: Sysmon, Windows Defender, PowerShell, AMSI and optionally Kernel-File, in one session
named ``sources.etw.session_name``; the Security log comes from the ``EventLog-Security``
real-time session. A session with our name left over by a killed agent keeps running (ETW
sessions are system-wide, pywintrace#45), so it is stopped by name at start and at close.

Modules: ``providers`` (what we enable: ``PROVIDERS``, ``enabled_for``), ``render`` (pure, unit-
tested with recorded pywintrace dicts: ``render_etw`` turns a pywintrace ``(event_id, dict)`` into
an event, ``KernelFileFilter`` is WHIDS's FileObject correlation: only the first read/write per
opened file, with its name), ``backend`` (session handling behind ``EtwBackend``,
``PywintraceBackend`` on Windows, so start/stop order is tested with a fake backend) and
``source`` (``EtwSource``).

pywintrace (0.2/0.3) quirks handled by ``PywintraceBackend``'s consumer subclass:

* it writes the event message over a property named ``Description`` (Sysmon 1 and 7 have one):
  the property is kept under ``DESCRIPTION_FIELD`` and rendered back as ``Description``;
* it upper-cases the task name: the manifest spelling is kept under ``TASK_FIELD``;
* it compares OpenTrace's int result with a ctypes object, so a consumer that cannot attach
  (EventLog-Security without the rights) looks started: the handle is checked here, and a
  consumer whose ProcessTrace thread ended is reported;
* its own lost events (session buffers) are read with ``ETW.query()`` and counted in ``lost``.

Providers are enabled on their Operational channel keyword (bit 63), not on every keyword: all
bits at level 5 also pull the PowerShell/AMSI analytic and debug events (noise, lost buffers).
"""
