"""Country names as Okta's ``geographicalContext.country`` writes them, to ISO 3166-1 alpha-2 codes.

Okta gives the English short name; Entra and OCSF give the code already. A name not listed here maps to
``ZZ`` (ISO's code for an unknown country) and the country is named as missing.
"""

from __future__ import annotations

UNKNOWN = "ZZ"

NAMES = {
    "afghanistan": "AF", "argentina": "AR", "australia": "AU", "austria": "AT", "bangladesh": "BD", "belarus": "BY",
    "belgium": "BE", "brazil": "BR", "bulgaria": "BG", "canada": "CA", "chile": "CL", "china": "CN",
    "colombia": "CO", "croatia": "HR", "czechia": "CZ", "czech republic": "CZ", "denmark": "DK", "egypt": "EG",
    "estonia": "EE", "finland": "FI", "france": "FR", "germany": "DE", "greece": "GR", "hong kong": "HK",
    "hungary": "HU", "iceland": "IS", "india": "IN", "indonesia": "ID", "iran": "IR", "iraq": "IQ", "ireland": "IE",
    "israel": "IL", "italy": "IT", "japan": "JP", "kazakhstan": "KZ", "kenya": "KE", "latvia": "LV",
    "lithuania": "LT", "luxembourg": "LU", "malaysia": "MY", "mexico": "MX", "morocco": "MA", "netherlands": "NL",
    "the netherlands": "NL", "new zealand": "NZ", "nigeria": "NG", "north korea": "KP", "norway": "NO",
    "pakistan": "PK", "peru": "PE", "philippines": "PH", "poland": "PL", "portugal": "PT", "romania": "RO",
    "russia": "RU", "russian federation": "RU", "saudi arabia": "SA", "serbia": "RS", "singapore": "SG",
    "slovakia": "SK", "slovenia": "SI", "south africa": "ZA", "south korea": "KR", "republic of korea": "KR",
    "spain": "ES", "sweden": "SE", "switzerland": "CH", "taiwan": "TW", "thailand": "TH", "turkey": "TR",
    "türkiye": "TR", "ukraine": "UA", "united arab emirates": "AE", "united kingdom": "GB", "united states": "US",
    "united states of america": "US", "vietnam": "VN", "viet nam": "VN",
}


def country_code(name: str) -> str | None:
    """ISO alpha-2 for a country name or code; None when unknown."""
    s = name.strip()
    if len(s) == 2 and s.isalpha():
        return s.upper()
    return NAMES.get(s.lower())
