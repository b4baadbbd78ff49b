"""A scanner for tests, configured by dotted path like a real one (DOCUMENTS_SCANNER)."""

from __future__ import annotations

from collections.abc import Iterable

from files.scanning import ScannerUnavailable, ScanVerdict

# The industry-standard harmless test string every antivirus reports as "EICAR-Test-File".
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class EicarScanner:
    """Finds the EICAR string anywhere in the content, read chunk by chunk like clamd."""

    calls: list[int] = []

    def scan(self, chunks: Iterable[bytes]) -> ScanVerdict:
        data = b"".join(chunks)
        EicarScanner.calls.append(len(data))
        if EICAR in data:
            return ScanVerdict(clean=False, signature="Eicar-Test-Signature")
        return ScanVerdict(clean=True)


class DownScanner:
    def scan(self, chunks: Iterable[bytes]) -> ScanVerdict:
        raise ScannerUnavailable("scanner is down")
