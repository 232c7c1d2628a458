"""Country names as Okta's ``geographicalContext.country`` writes them, to ISO 3166-1 alpha-2 codes.

Okta gives the English short name; Entra and OCSF give the code already (old Graph beta records: alpha-3). A name not listed here maps to
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


# ISO 3166-1 alpha-3 codes of the countries above: older Graph beta sign-ins wrote ``countryOrRegion: "USA"``.
ALPHA3 = {
    "AFG": "AF", "ARG": "AR", "AUS": "AU", "AUT": "AT", "BGD": "BD", "BLR": "BY", "BEL": "BE", "BRA": "BR",
    "BGR": "BG", "CAN": "CA", "CHL": "CL", "CHN": "CN", "COL": "CO", "HRV": "HR", "CZE": "CZ", "DNK": "DK",
    "EGY": "EG", "EST": "EE", "FIN": "FI", "FRA": "FR", "DEU": "DE", "GRC": "GR", "HKG": "HK", "HUN": "HU",
    "ISL": "IS", "IND": "IN", "IDN": "ID", "IRN": "IR", "IRQ": "IQ", "IRL": "IE", "ISR": "IL", "ITA": "IT",
    "JPN": "JP", "KAZ": "KZ", "KEN": "KE", "LVA": "LV", "LTU": "LT", "LUX": "LU", "MYS": "MY", "MEX": "MX",
    "MAR": "MA", "NLD": "NL", "NZL": "NZ", "NGA": "NG", "PRK": "KP", "NOR": "NO", "PAK": "PK", "PER": "PE",
    "PHL": "PH", "POL": "PL", "PRT": "PT", "ROU": "RO", "RUS": "RU", "SAU": "SA", "SRB": "RS", "SGP": "SG",
    "SVK": "SK", "SVN": "SI", "ZAF": "ZA", "KOR": "KR", "ESP": "ES", "SWE": "SE", "CHE": "CH", "TWN": "TW",
    "THA": "TH", "TUR": "TR", "UKR": "UA", "ARE": "AE", "GBR": "GB", "USA": "US", "VNM": "VN",
}


def country_code(name: str) -> str | None:
    """ISO alpha-2 for a country name or an alpha-2 / alpha-3 code; None when unknown (``ZZ`` is ISO's
    user-assigned "unknown", so it counts as unknown too)."""
    s = name.strip()
    if len(s) == 2 and s.isalpha():
        return None if s.upper() == UNKNOWN else s.upper()
    if len(s) == 3 and s.isalpha() and s.upper() in ALPHA3:
        return ALPHA3[s.upper()]
    return NAMES.get(s.lower())
