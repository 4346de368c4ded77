"""``etw.common`` of the fake pywintrace."""


def rel_ptr_to_str(base, offset):
    """pywintrace: the wide string at ``base + offset``; here a table of the fake info."""
    return base.strings[offset]
