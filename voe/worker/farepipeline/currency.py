"""Currencies: an ISO 4217 code of money a fare can be priced in, and the one asked."""

from __future__ import annotations

from voe.backends.base import ParseError
from voe.model import Answer, SearchJob, parse_options
from voe.settings import Settings
from voe.worker.farepipeline.base import FieldStage

# The active ISO 4217 currency codes (2025), less fund codes (BOV, CHE, CHW, CLF,
# COU, MXV, USN, UYI, UYW) and metals, testing and special codes (XAU, XDR, XTS,
# XXX...), which no fare is priced in. A short built-in set rather than babel or
# pycountry: it is all this check needs, the list changes a few times a decade, and
# either library would add megabytes of locale data to every worker for it.
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD
BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN
ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR
ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES
VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split())


def check_currency(text: str) -> str:
    """``" BRL"`` -> ``"BRL"``; ``ValueError`` unless an ISO 4217 code in upper case."""
    code = text.strip()
    if code not in ISO_4217:
        raise ValueError(f"{text!r} is not an ISO 4217 currency code")
    return code


class CurrencyCode(FieldStage):
    """Refuse a fare whose currency is not an ISO 4217 code (``BRL``, not ``R$`` or ``reais``)."""

    fields = ("currency",)
    all_valid = ISO_4217.issuperset  # each already "BRL"

    def check(self, value: str) -> str:
        """The currency code; ``ValueError`` if it is not one."""
        return check_currency(value)


class CurrencyAsked:
    """Refuse fares priced in another currency than the one the job asked or the page
    states for its whole answer: such a price is real, but not this search's (and stored
    beside the asked currency's prices of other cycles, it would read as a price change).

    A fare's currency is always the one the airline answered in, never assumed from the
    plan; this stage only checks that answer against what was asked.
    """

    calendar_days = True  # it reads a calendar's answer too

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer``, or raise ``ParseError`` naming the first fare priced otherwise."""
        stated = answer.answered.options if answer.answered is not None else None
        wanted = [(currency, why) for currency, why in (
            (parse_options(job.options).currency if job.options else "", "asked"),
            (stated.currency if stated is not None else "", "the page's"))
            if currency]
        for currency, why in wanted:
            for number, fare in enumerate(answer, start=1):
                if fare.currency != currency:
                    raise ParseError(f"fare {number} ({fare[0]!r}) is priced in "
                                     f"{fare.currency}, not {currency} ({why} currency)",
                                     page=answer.page)
        return answer
