import Foundation

/// A raw bank-statement line, as in `Config/examples/transactions.csv`.
public struct SampleTransaction: Sendable, Equatable {
    public var date: String
    public var payee: String
    /// The amount as written, e.g. `-54.32`.
    public var amount: String
    public var currency: String

    public init(date: String, payee: String, amount: String, currency: String) {
        self.date = date
        self.payee = payee
        self.amount = amount
        self.currency = currency
    }

    /// The amount as a number (zero if it does not parse).
    public var decimalAmount: Decimal { Decimal(string: amount, locale: Locale(identifier: "en_US_POSIX")) ?? 0 }
}

extension ExampleJobs {
    /// The raw bank lines the demo draws its transactions from: the lines of `Config/examples/transactions.csv`
    /// (a test keeps the two in step), embedded so that the generator needs no files.
    public static let sampleTransactions: [SampleTransaction] =
        sampleTransactionsCSV
        .split(whereSeparator: \.isNewline)
        .dropFirst()  // the header
        .compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 4 else { return nil }
            return SampleTransaction(date: fields[0], payee: fields[1], amount: fields[2], currency: fields[3])
        }

    /// `Config/examples/transactions.csv` (no field has a comma or a quote in it).
    private static let sampleTransactionsCSV = """
        date,payee,amount,currency
        2025-01-02,CARD 4921 TESCO STORES 3297 LONDON GB,-54.32,GBP
        2025-01-02,POS SAINSBURYS S/MKTS 0412 CAMDEN,-23.10,GBP
        2025-01-03,SEPA DD VATTENFALL KLANTENSERVICE NL12ZZZ330,-87.00,EUR
        2025-01-03,ALBERT HEIJN 1403 AMSTERDAM NL,-31.45,EUR
        2025-01-04,TFL TRAVEL CH TFL.GOV.UK/CP,-7.80,GBP
        2025-01-04,UBER *TRIP HELP.UBER.COM,-14.20,EUR
        2025-01-05,UBER *EATS PENDING,-27.90,EUR
        2025-01-05,NETFLIX.COM 866-579-7172 CA,-15.99,USD
        2025-01-06,PAYPAL *SPOTIFY P2B3C4D5E6,-10.99,EUR
        2025-01-06,BGC ACME WIDGETS LTD SALARY,3250.00,GBP
        2025-01-07,SO LANDLORD RENT FLAT 2,-1450.00,GBP
        2025-01-08,DIRECT DEBIT THAMES WATER 0045123,-38.50,GBP
        2025-01-08,DD BRITISH GAS 8500123456,-96.12,GBP
        2025-01-09,CARD 4921 PRET A MANGER 0231 LONDON,-6.45,GBP
        2025-01-09,STARBUCKS STORE 12345 SEATTLE WA,-5.75,USD
        2025-01-10,SHELL 1234 AMSTERDAM NL,-72.10,EUR
        2025-01-10,BP CONNECT 4411 READING,-61.00,GBP
        2025-01-11,AMZN MKTP US*2K4L39SX1,-34.99,USD
        2025-01-11,AMAZON.CO.UK*MK2LD0Q44,-19.99,GBP
        2025-01-12,LIDL DIENSTLEISTUNG GMBH 4567 BERLIN DE,-41.37,EUR
        2025-01-12,REWE MARKT GMBH BERLIN DE,-18.22,EUR
        2025-01-13,DB VERTRIEB GMBH FRANKFURT,-89.90,EUR
        2025-01-13,NS GROEP IZ NS REIZIGERS UTRECHT,-22.40,EUR
        2025-01-14,VODAFONE LTD 0213344,-30.00,GBP
        2025-01-14,SEPA DD T-MOBILE NETHERLANDS,-25.00,EUR
        2025-01-15,BOOTS 1123 OXFORD ST,-12.49,GBP
        2025-01-15,CVS/PHARMACY #04512 BOSTON MA,-9.87,USD
        2025-01-16,WALGREENS #1129 CHICAGO IL,-14.30,USD
        2025-01-16,DISNEY PLUS DISNEYPLUS.COM,-8.99,EUR
        2025-01-17,APPLE.COM/BILL ITUNES.COM,-2.99,GBP
        2025-01-17,PURE GYM LTD LEEDS,-24.99,GBP
        2025-01-18,DELIVEROO.CO.UK LONDON,-32.60,GBP
        2025-01-18,SQ *BLUE BOTTLE COFFEE OAKLAND CA,-4.50,USD
        2025-01-19,CARD 4921 THE CORNER BOOKSHOP 0012 BATH,-18.00,GBP
        2025-01-19,MCDONALDS 00321 MANCHESTER GB,-8.47,GBP
        2025-01-20,KLM 0742123456789 AMSTELVEEN,-312.00,EUR
        2025-01-20,RYANAIR LTD DUBLIN IE,-79.99,EUR
        2025-01-21,AIRBNB * HMQ2Z8K4,-245.00,EUR
        2025-01-21,BOOKING.COM HOTEL AMSTERDAM,-158.00,EUR
        2025-01-22,ATM WITHDRAWAL 1234 HIGH ST,-100.00,GBP
        2025-01-22,HMRC SELF ASSESSMENT,-420.00,GBP
        2025-01-23,COUNCIL TAX CAMDEN 12345678,-142.00,GBP
        2025-01-23,AVIVA INSURANCE 0088123,-45.60,GBP
        2025-01-24,ZIGGO SERVICES BV,-55.00,EUR
        2025-01-24,WHOLEFDS MKT 10234 AUSTIN TX,-67.43,USD
        2025-01-25,TRADER JOE S #552 SEATTLE WA,-48.12,USD
        2025-01-25,CHECKCARD 0125 SAFEWAY #1234 SAN JOSE CA,-52.10,USD
        2025-01-26,PURCHASE AUTHORIZED ON 01/25 TARGET T-1234 DENVER CO,-29.99,USD
        2025-01-26,LYFT *RIDE SUN 4PM,-18.40,USD
        2025-01-27,SHELL OIL 57442185 HOUSTON TX,-45.00,USD
        2025-01-27,COMCAST CABLE COMM 800-266-2278,-89.99,USD
        2025-01-28,PG&E WEB ONLINE,-112.34,USD
        2025-01-28,ACH DEPOSIT GLOBEX CORP PAYROLL,4120.55,USD
        2025-01-29,VENMO *ALEX PARKER,-25.00,USD
        2025-01-29,SEPA CT GEHALT MUSTERFIRMA GMBH,2890.00,EUR
        2025-01-30,EDEKA CENTER 0815 HAMBURG,-36.70,EUR
        2025-01-30,ROSSMANN 2231 MUENCHEN,-11.25,EUR
        2025-01-31,DM DROGERIE MARKT 1234,-15.85,EUR
        2025-01-31,FAVOR KEBAB HOUSE LEEDS,-9.50,GBP
        2025-02-01,CONTACTLESS COSTA COFFEE 43012 BRISTOL,-3.20,GBP
        2025-02-02,SEPA DD HBO MAX,-9.99,EUR
        2025-02-02,GOOGLE *YOUTUBEPREMIUM G.CO/HELPPAY#,-11.99,EUR
        2025-02-03,GOOGLE *GOOGLE STORAGE G.CO/HELPPAY#,-1.99,GBP
        2025-02-03,ESSO 2231 ROTTERDAM NL,-66.00,EUR
        2025-02-04,MIGROS M ZUERICH HB,-24.60,CHF
        2025-02-04,SBB CFF FFS,-56.00,CHF
        2025-02-05,INTEREST PAID,1.23,GBP
        2025-02-05,MONTHLY ACCOUNT FEE,-5.00,GBP
        2025-02-06,CARD 4921 MAPLE & OAK DELI 0044 YORK,-7.90,GBP
        2025-02-06,WALMART.COM 8009256278 BENTONVILLE AR,-76.54,USD
        2025-02-07,CARREFOUR CITY 2112 PARIS FR,-14.60,EUR
        2025-02-07,SNCF INTERNET PARIS,-45.00,EUR
        2025-02-08,DOORDASH*CHIPOTLE SAN FRANCISCO CA,-21.85,USD
        """
}
