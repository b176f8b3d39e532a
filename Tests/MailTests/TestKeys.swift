// Keys for tests only, generated with openssl for this file. Never use them to sign real mail.

enum TestKeys {
    static let rsaPKCS8 = """
        -----BEGIN PRIVATE KEY-----
        MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDCiF8r7qQ5OgVH
        Azr/nEbEGib9O/HuYP/DncBv1x7wTEmhCWY3eHB+EOr8atqm5eG3HDDPBK+8kE3w
        vsqxPMNaACB8AsDItCxj0E5jXhOik40DNyr9F21R3hHOLBriuOaLTfCiByjptuIg
        JdmJhhrFOq2cwtm8F9eOzx/OUcD121phMNWAv1w76C92uaYfUocJFN+60/f7iDo1
        UexzGHURMmyrtrGo4SOY64yRfeMOKoba6i2gdjBe5f6Pg23Ur9faUREwlf1qst5L
        mjUzXOwIWmG/O65nzWX+vCxCWm0zwRcz/UZeKiaQQA6IzTYxWNK1C1MxCagg8E27
        VjIm2/y5AgMBAAECgf8IZhDDThEMZ3TgWKGsuFXqBpVXgfusn+HJTOtS21UcTi7f
        nJW/tGX+hKGFoquYHUc1rhzZJBdJ1vEatyIJJpZw+3V5DZfm3II2iZ9fgnpkA8Tq
        Xp/NWv+uHWGZ8O84OPlPWzaBrWGrBlVDr7z3/SMPzKErgcTXTJwB30A864CRo3Uq
        sdCtggPCvQyytH7TSoqBYLuLjKZb4UoGszxlJiZiynVm6sEpqhrGueVYGywN1H5y
        dJ/A6Fm7aJ+UQ+dcFBDgMqZZPqc/VNgSywHwYKJG3v7HrbEQlPcbSXa/g+blr9qp
        6s8D4VUFwJn5lgXywlk6gcs1LqNxkkZyS8/7hgECgYEA7ZLoT3/D6Bd2hbYBzha/
        c0go5UkH/1VShGurb4V8KG13JmDdxseZqnu2Ti2ystMsbVvPkVvFXYd0+AvnEfDJ
        eiNOZWKx25EFhXQq2yPyEiO6S/SC/XuxR3B8WPDMPpBgm9w7Xc7daiDNX2szdd12
        CXobjnMAWVpE3FMiaeKEJVkCgYEA0Z7e4o9xgqVI88GGQf7jlM79oMzJ5NRzf+JH
        bU/4g0wcvir8TP6VZSc5LiHrHeRj/5KPNeazSh7Y8hJhoYeqhwFbrcaU2X/SPS3c
        aM00IoJgfPWhk4Q//sLr6HL0J4XjzW4elgMAbQNvNDaD2b4bTSv/GV5J0pEMKknn
        FLU/xmECgYBoJMMzvmVpw4dQXBX0euJYLeTHhjk8Q/HVXMGdNJ3Vtw7JQyNVNUB2
        jJ7BLKUuYQYTtnCKXvlo461x4v3bTntz0DBYn2gqQStzchYrVFmUfBb5nukhJ2zy
        TSwlbQGL14ySJnvbxognMtP0pTC81WUeCGo2CtG3WavgDY2DbynQmQKBgDwZlsHS
        arMQfJgWtk2ZrNpvdlxyGriXCP5zfBMlSJUsb1k+rdPNcjvsQQKvCuApKVqPRKwp
        luH7ciwFhSRw5z2J8CUkuGybr0WHLpiFrRrv0oZBTrAizM5YSJb+zm2+f4/YsMBF
        4AthXrLTpn35eY5ovN0jIXtTxu8g/TX8uWpBAoGBAMC23YCeQc9yjONuGYp+inwC
        Xgawa8+OhzB777m6RhGJHk5x+P449h+/yPOFH9q6b6kXryexIjWRUDzcAva40jfM
        CEyOQsPS+CoWfkn1mmeeR27D5qFS3ytCDpVEKyJqHM+6siiOAlbfY7XCuadgtUFN
        nUuUb4ii9DsyqizU8K53
        -----END PRIVATE KEY-----
        """

    static let rsaPKCS1 = """
        -----BEGIN RSA PRIVATE KEY-----
        MIIEoQIBAAKCAQEAwohfK+6kOToFRwM6/5xGxBom/Tvx7mD/w53Ab9ce8ExJoQlm
        N3hwfhDq/GrapuXhtxwwzwSvvJBN8L7KsTzDWgAgfALAyLQsY9BOY14TopONAzcq
        /RdtUd4Rziwa4rjmi03wogco6bbiICXZiYYaxTqtnMLZvBfXjs8fzlHA9dtaYTDV
        gL9cO+gvdrmmH1KHCRTfutP3+4g6NVHscxh1ETJsq7axqOEjmOuMkX3jDiqG2uot
        oHYwXuX+j4Nt1K/X2lERMJX9arLeS5o1M1zsCFphvzuuZ81l/rwsQlptM8EXM/1G
        XiomkEAOiM02MVjStQtTMQmoIPBNu1YyJtv8uQIDAQABAoH/CGYQw04RDGd04Fih
        rLhV6gaVV4H7rJ/hyUzrUttVHE4u35yVv7Rl/oShhaKrmB1HNa4c2SQXSdbxGrci
        CSaWcPt1eQ2X5tyCNomfX4J6ZAPE6l6fzVr/rh1hmfDvODj5T1s2ga1hqwZVQ6+8
        9/0jD8yhK4HE10ycAd9APOuAkaN1KrHQrYIDwr0MsrR+00qKgWC7i4ymW+FKBrM8
        ZSYmYsp1ZurBKaoaxrnlWBssDdR+cnSfwOhZu2iflEPnXBQQ4DKmWT6nP1TYEssB
        8GCiRt7+x62xEJT3G0l2v4Pm5a/aqerPA+FVBcCZ+ZYF8sJZOoHLNS6jcZJGckvP
        +4YBAoGBAO2S6E9/w+gXdoW2Ac4Wv3NIKOVJB/9VUoRrq2+FfChtdyZg3cbHmap7
        tk4tsrLTLG1bz5FbxV2HdPgL5xHwyXojTmVisduRBYV0Ktsj8hIjukv0gv17sUdw
        fFjwzD6QYJvcO13O3WogzV9rM3Xddgl6G45zAFlaRNxTImnihCVZAoGBANGe3uKP
        cYKlSPPBhkH+45TO/aDMyeTUc3/iR21P+INMHL4q/Ez+lWUnOS4h6x3kY/+SjzXm
        s0oe2PISYaGHqocBW63GlNl/0j0t3GjNNCKCYHz1oZOEP/7C6+hy9CeF481uHpYD
        AG0DbzQ2g9m+G00r/xleSdKRDCpJ5xS1P8ZhAoGAaCTDM75lacOHUFwV9HriWC3k
        x4Y5PEPx1VzBnTSd1bcOyUMjVTVAdoyewSylLmEGE7Zwil75aOOtceL92057c9Aw
        WJ9oKkErc3IWK1RZlHwW+Z7pISds8k0sJW0Bi9eMkiZ728aIJzLT9KUwvNVlHghq
        NgrRt1mr4A2Ng28p0JkCgYA8GZbB0mqzEHyYFrZNmazab3Zcchq4lwj+c3wTJUiV
        LG9ZPq3TzXI77EECrwrgKSlaj0SsKZbh+3IsBYUkcOc9ifAlJLhsm69Fhy6Yha0a
        79KGQU6wIszOWEiW/s5tvn+P2LDAReALYV6y06Z9+XmOaLzdIyF7U8bvIP01/Llq
        QQKBgQDAtt2AnkHPcozjbhmKfop8Al4GsGvPjocwe++5ukYRiR5Ocfj+OPYfv8jz
        hR/aum+pF68nsSI1kVA83AL2uNI3zAhMjkLD0vgqFn5J9Zpnnkduw+ahUt8rQg6V
        RCsiahzPurIojgJW32O1wrmnYLVBTZ1LlG+IovQ7Mqos1PCudw==
        -----END RSA PRIVATE KEY-----
        """

    static let ed25519 = """
        -----BEGIN PRIVATE KEY-----
        MC4CAQAwBQYDK2VwBCIEIKgmJFnSwohK9WURtRZuP9Pw5EYtMPdiV5aEB3p2zuVA
        -----END PRIVATE KEY-----
        """

    static let rsa1024 = """
        -----BEGIN PRIVATE KEY-----
        MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAKRwCAVGrDs9bKfC
        UX3XYLdlduHoTryulmwbzxNZNd1vNDlxujHEg5CPl5229Fuoy4ICw75jOIEpx6zn
        9kL0Ikpln9XmTPWP+qw55bvf85+mvnayb10v7Wgsl+0NTOx24Bq2sTpVdoQpxqC7
        LsjxIizstSs60gCunJj09DH5ZI1lAgMBAAECgYEAoYO5HRWRzo5Cz3S6fpSy1vC+
        mJ6J2CLUdVPLTgHuOpYkAdiHPqL7Z17jWXJ/Chj967GzeqoSsivLiTY+WP1bP40F
        jXGorPcUpRhd2Urmve7IBL1wHSkJnMmKgACYKu4JC2XHLJXNHoVsDl6umf9MxJq8
        nWILjjRfSySszDz+NIECQQDPW5c+TfGVgyZKu2b3ZmY2/Vhqu7MXh7zrdlSiY7n/
        dcKO1md0AvQL35EP7zeb8flGFpYFdd0wySbk9PP+sIhNAkEAywL3YLCtJ/CsngqG
        oePmthb5IVRWDRuQfEMriLykWw1oJb6oc44sy8L/6Nq2ElV1JOeQ70R/wWk/rvYX
        dcUleQJAPfHEms46D0oglE6rkdi7TE4erbPo6myYWVb+LYzRMamCN52BRjzjnvBo
        q3PxDtsYdoGky3jMXRiaT+eFRF6EOQJAVu04O6CrJDT71Ngw+dT6DvIbTtgr2IT7
        AxpH487SmWJOPAs9We2A5ObkaTJtT8Bj3p+BAdLU2V5VtHcPaJA4EQJBAJeoyCcG
        EJcFk962IVckV6Yu7mPeiOZ9ndTxylzoVb+nOKOXF+4F8t6j0MS3/2Yc7/RY+Iqw
        qe5I2F1Cygz3qYQ=
        -----END PRIVATE KEY-----
        """

    static let ecP256 = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEHN1lw98nwPdfg7k
        g8dagUjMoeXZDT7IDTt7+tMFotGhRANCAAQTgufDyJvzNBH7kxqoUhDGB92HlqJd
        csv0DVZplwOYwXJwu+Z4EiUc1E6Q3LWf1J9HwmFlMMXJQKH17Iv7nz13
        -----END PRIVATE KEY-----
        """

}
