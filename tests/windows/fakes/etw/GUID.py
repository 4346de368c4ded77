import uuid


class GUID:
    """pywintrace's ``GUID(name)``: a ctypes structure built from a GUID string."""

    def __init__(self, name: str) -> None:
        self.value = uuid.UUID(name.strip("{}"))  # raises on a malformed GUID, as ctypes would

    def __str__(self) -> str:
        return "{" + str(self.value).upper() + "}"
