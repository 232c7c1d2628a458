"""Vendor risk reasons mapped to glassgate's factor families.

Known names first (Okta risk reasons and behaviors, Entra ``riskEventTypes_v2``), then words that give the
family away in free text (OCSF ``risk_details``). A reason neither place knows keeps ``family=None`` and is
shown as the vendor stated it.
"""

from __future__ import annotations

import re

from integrations.ingest.observed import FamilyName

KNOWN: dict[str, FamilyName] = {
    # Okta risk reasons and behavior names (System Log debugData.risk / debugData.behaviors)
    "anomalous location": "network", "anomalous geo-distance": "network", "new geo-location": "network",
    "new city": "network", "new state": "network", "new country": "network", "new ip": "network",
    "velocity": "network", "velocity behavior": "network", "suspicious ip": "network", "riskip": "network",
    "threat suspected": "network",
    "anomalous device": "device", "new device": "device", "unknown device": "device",
    # Entra riskEventTypes_v2 (Microsoft Entra ID Protection risk detections)
    "unlikelytravel": "network", "impossibletravel": "network", "mcasimpossibletravel": "network",
    "anonymizedipaddress": "network", "maliciousipaddress": "network", "suspiciousipaddress": "network",
    "malwareinfectedipaddress": "network", "riskyipaddress": "network", "nationstateip": "network",
    "newcountry": "network", "attackerinthemiddle": "network",
    "leakedcredentials": "identity", "passwordspray": "identity", "investigationsthreatintelligence": "identity",
    "adminconfirmedsignincompromised": "identity", "anomaloustoken": "identity", "tokenissueranomaly": "identity",
    "suspiciousbrowser": "device", "attemptedprtaccess": "device",
    "unfamiliarfeatures": "behavior", "suspiciousinboxforwarding": "behavior",
    "mcassuspiciousinboxmanipulationrules": "behavior", "suspiciousapitraffic": "behavior",
}

WORDS: tuple[tuple[FamilyName, re.Pattern[str]], ...] = (
    ("identity", re.compile(r"credential|password|spray|token|mfa|identity|compromis|phish", re.I)),
    ("device", re.compile(r"device|browser|endpoint|posture|jailbr|prt\b", re.I)),
    ("network", re.compile(r"locat|geo|travel|\bip\b|country|city|velocity|network|proxy|vpn|\btor\b|anonym|asn\b",
                           re.I)),
    ("behavior", re.compile(r"behavio|unfamiliar|inbox|traffic|volume|rate|hour", re.I)),
)


def family_of(reason: str) -> FamilyName | None:
    """The factor family of a vendor's stated reason, or None when glassgate has none for it."""
    key = reason.strip().lower()
    if key in KNOWN:
        return KNOWN[key]
    return next((fam for fam, rx in WORDS if rx.search(key)), None)
